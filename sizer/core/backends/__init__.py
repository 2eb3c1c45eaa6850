"""Ways of running a model: one module each (causal LMs through transformers, encoders through
sentence-transformers; an HTTP backend for serving engines later)."""
