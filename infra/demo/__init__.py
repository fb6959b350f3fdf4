"""`make demo` (`python -m infra.demo`): the whole loop, live, on one machine.

A private local stack (Apache Kafka + redis-server on free ports), the generator producing events with
an accelerated clock (hours of event time in a few minutes, late clicks crossing the negative
window), the embedded join runtime and the trainer sidecar running side by side, and a live view of
both. The sidecar trains on the first part of the stream only; the rest is held out: at the end the
published model and a naive model trained on the same stream are scored there against the
generator's true labels. The report goes to the console, `.demo/report.json` and `.demo/report.png`.
"""
