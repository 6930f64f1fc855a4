"""The steps of one namespace's migration, as plain functions over a Runtime; Celery tasks wrap them."""
