"""Starting the real servers the platform needs, embedded: used by `medai up` and by the test fixtures."""
