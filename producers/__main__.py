"""`python -m producers DOMAIN --rate R --metrics-port P`: what `coelho up` starts for each domain."""

from producers.cli import produce

produce(prog_name="python -m producers")
