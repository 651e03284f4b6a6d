"""The event contract (domains, CloudEvent types, validation) and the local router that executes knative/."""
