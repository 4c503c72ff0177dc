"""CallBridge core: canonical model, store, adapters. Knows nothing of API Gateway."""
