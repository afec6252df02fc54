"""The REST API under /api: JSON, API-token authentication, one router per resource."""
