"""The fleet: device events to MQTT through a store-and-forward journal (gateway, journal),
and many installations evaluated or commissioned on a Dask cluster (dask_runner)."""
