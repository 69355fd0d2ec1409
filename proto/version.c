/* version: the protocol version this build speaks (see proto/PROTOCOL.md). */
#include "proto/version.h"

unsigned sp_proto_version(void)
{
    return SP_PROTO_VERSION;
}
