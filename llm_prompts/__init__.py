"""Prompt templates (versioned text files), installed as the package data ``ialp/llm_prompts``."""
