"""HAMi in the sandbox: its source, its build (binaries laid out as HAMi's container image, and its chart)."""
