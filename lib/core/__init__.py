"""The core layer: what every phase shares (errors, paths, files, parameters, text rules,
prompt formats, the LLM client, local servers, the embedded model, figures)."""
