"""Domain core of kosmos-promote: models, planning, ordering, sanitising, Kubernetes access, storage."""
