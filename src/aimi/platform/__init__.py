"""The serverless platform around the models: deployments, keys, quotas, usage."""
