#!/bin/sh
# Init container of each Redis pod (kubernetes platform): builds this pod's
# redis.conf on a tmpfs from the shared one (ConfigMap key, rendered from the
# hosts template), adds what is secret or differs per pod, and where a
# master is known, replicaof. The environment comes from the StatefulSet.
set -eu
conf="$RUN_DIR/redis.conf"
cp "$CONFIG_DIR/redis.conf" "$conf"
chmod 0600 "$conf"
printf 'requirepass "%s"\nmasterauth "%s"\nreplica-announce-ip %s\n' \
  "$REDIS_PASSWORD" "$REDIS_PASSWORD" "$POD_FQDN" >>"$conf"

# The master the sentinels name wins (after a failover it is not pod 0).
# Without an answer (first deploy, no sentinel up yet) pod 0 starts as the
# master and the others follow it; min-replicas-to-write keeps a master
# without replicas from accepting writes that a failover would lose.
master=""
i=0
while [ "$i" -lt "$SENTINELS" ]; do
  if answer=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli --no-auth-warning -e \
      -h "$SENTINEL_SERVICE-$i.$SENTINEL_SERVICE.$DOMAIN" -p "$SENTINEL_PORT" \
      SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null); then
    master=$(printf '%s\n' "$answer" | head -n 1)
    [ -n "$master" ] && break
  fi
  i=$((i + 1))
done
if [ -z "$master" ]; then
  master=$INITIAL_MASTER
fi
if [ "$master" != "$POD_FQDN" ]; then
  printf 'replicaof %s %s\n' "$master" "$REDIS_PORT" >>"$conf"
fi
echo "redis.conf ready; master: $master"
