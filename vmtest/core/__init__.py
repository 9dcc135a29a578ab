"""What every layer shares: the exception hierarchy, logging, processes, retries, the cache layout."""
