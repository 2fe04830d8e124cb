"""E-mail pages: a user's mail preferences, the signed unsubscribe link (no login), the admins' mail log."""
