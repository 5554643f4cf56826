"""What bench/api_list.py and bench/webhook_ingest.py share: processes (gunicorn for ours and for the
naive baseline, a private redis-server), the environments they run under, wrk and its rounds, and the
in-process measurement.
"""
