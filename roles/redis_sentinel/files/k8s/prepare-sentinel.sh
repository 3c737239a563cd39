#!/bin/sh
# Init container of each Sentinel pod (kubernetes platform): writes
# sentinel.conf ONCE onto the pod's volume, as on hosts: from then on Sentinel
# owns the file (its id, epochs, the replicas and sentinels it found, the
# current master). The shared part is the ConfigMap key rendered from the
# hosts template; the passwords and the pod's own name are added here.
set -eu
conf="$DATA_DIR/sentinel.conf"
if [ -f "$conf" ]; then
  echo "sentinel.conf exists; Sentinel owns it"
  exit 0
fi
tmp="$conf.new"
cp "$CONFIG_DIR/sentinel.conf" "$tmp"

# A sentinel that joins later monitors the master the others name.
i=0
while [ "$i" -lt "$SENTINELS" ]; do
  peer="$SENTINEL_SERVICE-$i.$SENTINEL_SERVICE.$DOMAIN"
  if [ "$peer" != "$POD_FQDN" ] && answer=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 \
      redis-cli --no-auth-warning -e -h "$peer" -p "$SENTINEL_PORT" \
      SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null); then
    host=$(printf '%s\n' "$answer" | sed -n 1p)
    port=$(printf '%s\n' "$answer" | sed -n 2p)
    if [ -n "$host" ] && [ -n "$port" ]; then
      sed -i "s/^sentinel monitor $MASTER_NAME [^ ]* [0-9]* /sentinel monitor $MASTER_NAME $host $port /" "$tmp"
      break
    fi
  fi
  i=$((i + 1))
done
printf 'requirepass "%s"\nsentinel sentinel-pass "%s"\nsentinel auth-pass %s "%s"\nsentinel announce-ip %s\n' \
  "$SENTINEL_PASSWORD" "$SENTINEL_PASSWORD" "$MASTER_NAME" "$REDIS_PASSWORD" "$POD_FQDN" >>"$tmp"
chmod 0600 "$tmp"
mv "$tmp" "$conf"
grep '^sentinel monitor' "$conf"
