"""stationhub: the monitoring centre's reference consumer of the stations' uplink
(protocol/SPEC.md §9). See docs/hub.md."""
