# SelfLearningTrader in one container: supervisord runs the same process tree as on a VPS
# (private Redis and PostgreSQL, the paper exchange, the trading processes), in paper mode.
#   docker build -t slt . && docker run --shm-size=256m -p 127.0.0.1:8700:8700 slt
# Status: `docker exec <container> .venv/bin/slt status` (the status page listens on the
# container's loopback; binding it elsewhere needs SLT_STATUS_TOKEN, see README "The reporter").
# Live mode: pass SLT_MODE=live and SLT_API_KEY/SLT_API_SECRET (or mount a secret file and name it
# in an SLT_CONFIG file); never bake secrets into the image.
FROM debian:bookworm-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential redis-server postgresql ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/slt
# requirements.lock: scripts/install installs exactly its versions and hashes, as CI does.
COPY pyproject.toml README.md requirements.lock ./
COPY procs ./procs
COPY shared ./shared
COPY config ./config
COPY scripts ./scripts
COPY supervisord.conf ./
RUN scripts/install

# The paper exchange listens on all interfaces inside the container only; publish it to
# 127.0.0.1 on the host (see above).
RUN printf '[paper_exchange]\nhost = "0.0.0.0"\n' > /etc/slt-docker.toml
ENV SLT_MODE=paper SLT_CONFIG=/etc/slt-docker.toml PYTHONUNBUFFERED=1
EXPOSE 8700
VOLUME ["/opt/slt/run"]
STOPSIGNAL SIGTERM
CMD ["scripts/run-paper", "--foreground"]
