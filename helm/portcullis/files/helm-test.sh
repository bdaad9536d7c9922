# helm test: the gateway must refuse a CONNECT to the metadata address itself.
# Environment: PROXY (http://gateway:port), TARGET (host:port). POSIX sh + curl.
set -u
head=$(curl -sS -o /dev/null -D - --connect-timeout 10 --max-time 30 \
  --proxytunnel --proxy "$PROXY" "http://$TARGET/" 2>&1)
rc=$?
printf 'CONNECT %s through %s (curl exit %s):\n%s\n' "$TARGET" "$PROXY" "$rc" "$head"
status=$(printf '%s\n' "$head" | sed -n 's/^HTTP\/1\.[01] \([0-9][0-9][0-9]\).*/\1/p' | head -n 1)
if [ "$status" != 403 ]; then
  echo "FAIL: expected the gateway to answer the CONNECT with 403, got '${status:-nothing}'"
  exit 1
fi
if ! printf '%s\n' "$head" | grep -qiE '^proxy-status: *portcullis;.*details="(blocked_address|unknown_source)"'; then
  echo "FAIL: the 403 carries no portcullis Proxy-Status with blocked_address or unknown_source"
  exit 1
fi
echo "PASS: the gateway refused the metadata CONNECT"
