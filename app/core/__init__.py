"""What every process of the service shares: settings, database, tables, broker, errors, security."""
