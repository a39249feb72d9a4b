"""leakwatch: find customer PII and secrets leaking from Salesforce-integrated shops into AI
services, fast, and keep the evidence — masked and hashed, never raw — in DuckDB."""

__version__ = "0.1.0"
