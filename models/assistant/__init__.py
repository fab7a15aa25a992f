"""The assistant: request parsing, dialogue state, retrieval over the catalog, and the stories that explain picks."""
