/*
 * serve.h: what the parts of `metersim serve` share — the server context
 * (fleet, event loop, simulated clock, faults, counters) and the entry
 * points of the transports (serve.c: DLMS over the wrapper, HDLC and
 * GPRS; gw_mbus.c; gw_modbus.c), of the control socket (control.c) and of
 * the COSEM object model (cosem_model.c).
 *
 * Threads: everything runs in the one libevent loop except the Modbus
 * gateways (libmodbus blocks, so each gateway has its own thread).  The
 * model is not thread-safe, so every access to a meter's state goes
 * through serve_lock()/serve_unlock(); counters are updated atomically.
 */
#ifndef SIM_SERVE_H
#define SIM_SERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dlms_server.h"
#include "faults.h"
#include "model.h"

struct event_base;

/* Counters shown by `ctl counters` (updated with __atomic builtins). */
struct serve_counters {
	uint64_t connections; /* accepted or established */
	uint64_t refused;     /* refused by a fault or with no listener */
	uint64_t closed;
	uint64_t associations;
	uint64_t rejected; /* AARQs / HLS pass 3 refused */
	uint64_t apdus;    /* requests served */
	uint64_t errors;   /* requests the engine could not serve */
	uint64_t bytes_in, bytes_out;
	uint64_t mbus_requests, mbus_answers;
	uint64_t modbus_requests;
	uint64_t modbus_open;     /* Modbus masters connected now (all gateways) */
	uint64_t modbus_open_max; /* the most one Modbus gateway had at once */
	uint64_t pushes;
};

struct serve_cfg {
	uint8_t transport;      /* enum sim_transport */
	uint16_t base_port;     /* 0: per-meter loopback addresses (DLMS), 10000 for gateways */
	double speed;           /* simulated seconds per real second (0: frozen) */
	int64_t start;          /* simulated time at start; 0: now */
	uint32_t baud;          /* M-Bus */
	uint32_t max_listeners; /* per-meter DLMS listeners; 0: as many as fds allow */
	uint16_t lo_port;       /* loopback addresses: the port (0: 4059) */
	bool per_meter;         /* loopback: one listener per meter, not one for all */
	uint32_t first;         /* first meter index served */
	const char *gprs;       /* HOST:PORT */
	uint32_t gprs_max;      /* concurrent GPRS connections */
	bool push;              /* GPRS: DataNotification on connect and alarms */
	const char *control;
	const char *modbus_map;
	uint32_t modbus_masters; /* Modbus masters per gateway at once; 0: no limit */
	bool verbose;
};

struct serve {
	struct serve_cfg cfg;
	struct sim_fleet *fleet;
	struct event_base *base;
	pthread_mutex_t lock;
	double t0_real; /* CLOCK_REALTIME at start */
	int64_t t0_sim;
	struct faults faults;
	struct serve_counters cnt;
	uint32_t listeners; /* DLMS listeners or gateways open */
	uint32_t served;    /* meters reachable */
	uint64_t conn_seq;  /* connection numbers, for fault streams */
	void *dlms;         /* serve.c */
	void *mbus;         /* gw_mbus.c */
	void *modbus;       /* gw_modbus.c */
	void *ctl;          /* control.c */
};

#define CNT_ADD(sv, field, n) __atomic_add_fetch(&(sv)->cnt.field, (n), __ATOMIC_RELAXED)

/* Simulated time now (UTC seconds). */
int64_t serve_now(const struct serve *sv);
void serve_lock(struct serve *sv);
void serve_unlock(struct serve *sv);
/* Index of a serial (for the fault specs and the control socket). */
int64_t serve_lookup(void *sv, uint32_t serial);

/* Run `metersim serve` with the fleet cfg and serve cfg: blocks until
 * SIGINT/SIGTERM or the control socket's `quit`.  Returns an exit code. */
int serve_run(const struct sim_fleet_cfg *fcfg, const struct serve_cfg *cfg,
              const char *faults_spec);

/* DLMS transports (serve.c): one listener on INADDR_ANY for the loopback
 * fleet, or one per meter (consecutive ports, --per-meter-listeners), or
 * GPRS connects. */
int dlms_start(struct serve *sv);
void dlms_stop(struct serve *sv);
/* Push a DataNotification from meter index over its GPRS connection;
 * 0 or METER_ESTATE (not connected). */
int dlms_push(struct serve *sv, uint32_t index);
/* Arm meter index to push in its next management association (not the
 * public client's), just before answering its second request: a push
 * inside a head-end's session.  0 or METER_ENOSPC (too many armed). */
int dlms_push_arm(struct serve *sv, uint32_t index);
/* Faults were changed: open or close the listeners of refusing meters now. */
void dlms_faults_changed(struct serve *sv);
/* Connections open now. */
uint32_t dlms_open_connections(const struct serve *sv);

/* M-Bus gateways (gw_mbus.c): one TCP port per bus of up to 250 meters. */
int mbus_gw_start(struct serve *sv);
void mbus_gw_stop(struct serve *sv);

/* Modbus-TCP gateways (gw_modbus.c): a listening thread per gateway of up
 * to 247 meters, a thread per connected master. */
int modbus_gw_start(struct serve *sv);
void modbus_gw_stop(struct serve *sv);
/* The value of a map entry's reading of meter m at t (units as the model's). */
struct modbus_map_entry;

/* Control socket (control.c). */
int control_start(struct serve *sv, const char *path);
void control_stop(struct serve *sv);

/* COSEM object model (cosem_model.c): the dlms_server callbacks; arg is a
 * struct cosem_ctx. */
struct cosem_ctx {
	struct serve *sv;
	uint32_t index;
};
extern const struct dlms_server_ops cosem_model_ops;
/* Alarm register value (bits for breaker open, credit low, ...), pushed
 * by GPRS meters. */
uint32_t cosem_alarms(struct sim_meter *m, int64_t t);
/* Encode the push body (a structure: logical device name, clock, A+,
 * alarms) into out. */
void cosem_push_body(struct sim_meter *m, int64_t t, struct mbuf *out);

/* Default M-Bus secondary identity of meter m (see `metersim export`). */
#define SIM_MBUS_MANUFACTURER 0x2c2d /* "KAM" */
#define SIM_MBUS_VERSION      0x1b
#define SIM_MBUS_MEDIUM       0x02 /* electricity */

#endif
