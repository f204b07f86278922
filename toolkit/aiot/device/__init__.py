"""Talking to a device: the framed serial protocol, the client, and the parity runs against tflite-micro."""
