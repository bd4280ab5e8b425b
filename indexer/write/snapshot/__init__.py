"""Snapshots of a live deployment (`semsearch snapshot`, POST /snapshots) and their restore (`semsearch restore`)."""
