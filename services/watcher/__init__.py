"""The policy watcher process (kopf): prechecks policies, publishes namespace jobs, reports progress."""
