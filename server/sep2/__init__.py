"""IEEE 2030.5 adapter: resource models <-> XML, routes per function set, paging, event rules, notifications."""
