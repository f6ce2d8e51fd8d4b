"""The service's operations on corpora, models and jobs, called by the API routes and the workers."""
