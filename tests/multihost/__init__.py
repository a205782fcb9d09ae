"""Several hosts for real: network namespaces with a veth each, the host's Postgres and RabbitMQ through a relay."""
