"""DynamoDB repositories. Key layout is documented in template.yaml next to each table."""
