"""The core layer: what every phase shares (errors, paths, files, parameters, text rules,
prompt formats and their token ids, the LLM client and the Batch API lifecycle, local servers,
models, figures)."""
