"""The LLM layer: one client for any OpenAI-compatible endpoint, its cache, providers, prices and token counts."""
