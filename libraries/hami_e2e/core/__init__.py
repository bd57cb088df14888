"""What every keyword component shares: context, component base and waits, failures, listener."""
