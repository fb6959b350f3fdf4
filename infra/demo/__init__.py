"""`make demo` (`python -m infra.demo`): the whole loop, live, on one machine.

A private local stack (Apache Kafka + redis-server on free ports), the generator producing events with
an accelerated clock (hours of event time in a few minutes, late clicks crossing the negative
window), the embedded join runtime and two trainer sidecars (PU and naive) running side by side, and a
live view of them. Both sidecars start from one day-level model (the daily hot start: a shuffled
`trainer fit` over a previous generated day of the same world, joined into complete samples), so the
comparison measures what the stream's labels did to each. The sidecars train on the first part of the
stream only; the rest is held out: at the end the published PU and naive models (and the day-level model
they started from) are scored there against the generator's true labels. The report goes to the
console, `.demo/report.json` and `.demo/report.png`.
"""
