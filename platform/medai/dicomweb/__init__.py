"""DICOMweb (PS3.18): STOW-RS to store, QIDO-RS to search, WADO-RS to retrieve."""
