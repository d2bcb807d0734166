"""The wire contract: pydantic models, canonical forms, the codec and time conversions.

Everything else in smsmon imports this package; it imports nothing of smsmon but itself.
"""
