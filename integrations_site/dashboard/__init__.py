"""The staff cockpit on the admin index: figures (aggregate queries, briefly cached), server-side SVG
charts, the context the index template reads (views), and the admin site that shows them and groups
the index by what staff do (site, installed by apps.OperationsAdminConfig)."""
