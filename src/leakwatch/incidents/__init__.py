"""Incidents: findings grouped into incidents, regulatory regimes and their clocks, playbooks,
notice drafts and the tamper-evident audit trail. No Textual and no network in here."""
