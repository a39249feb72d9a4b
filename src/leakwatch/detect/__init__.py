"""Detection: rules (YAML), validators, context scoring and masking of regex candidates."""
