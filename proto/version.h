/* version: the protocol version number. Peers with a different version are
 * refused with a message naming both. */
#ifndef SP_PROTO_VERSION_H
#define SP_PROTO_VERSION_H

#define SP_PROTO_VERSION 4u

unsigned sp_proto_version(void);

#endif
