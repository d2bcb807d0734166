"""Offline tools: simulator, archive, look-back audit, report, demo. No Faust, no aiokafka."""
