"""The worker's runtime: the Faust app, tables, output, reference loader, metrics and the
Faust compatibility module. With `smsmon.agents`, the only code that imports Faust or aiokafka."""
