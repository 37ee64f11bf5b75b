"""The REST API of AI analysis, one module per resource: the service registry, results, the worklist,
the organization's webhook."""
