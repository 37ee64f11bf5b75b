"""AI analysis: the services, their Triton models, routing and dispatch (see the AI analysis issue)."""
