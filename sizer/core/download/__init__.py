"""Fetching a candidate's files from the Hub: what to fetch (`plan`), the two requests
(`hub_requests`), the download with progress (`fetch`, `progress`) and downloads inside a run
(`in_run`)."""
