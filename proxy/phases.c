/* The wiring of states to phases: the only file that knows every phase. */
#include "conn.h"

#include "dial.h"
#include "forward.h"
#include "hello.h"
#include "intercepted.h"
#include "proxyhdr.h"
#include "relay.h"
#include "request.h"

const struct conn_phase *const conn_phases[CS__COUNT] = {
    [CS_PROXY_HEADER] = &proxyhdr_phase,
    [CS_REQUEST] = &request_phase,
    [CS_RESOLVING] = &dial_resolving_phase,
    [CS_CONNECTING] = &dial_connecting_phase,
    [CS_HELLO] = &hello_phase,
    [CS_SERVER_HELLO] = &hello_server_phase,
    [CS_HELLO_RETRY] = &hello_retry_phase,
    [CS_TUNNEL] = &relay_phase,
    [CS_FORWARD] = &forward_phase,
    [CS_UPGRADING] = &upgrading_phase,
    [CS_ICPT_UPSTREAM] = &intercept_upstream_phase,
    [CS_ICPT_CLIENT] = &intercept_client_phase,
    [CS_FINISHING] = NULL, /* conn.c: conn_finish */
    [CS_CLOSED] = NULL,    /* conn.c: conn_close */
};
