/*
 * command.h: the operator command queue inside ammd (DESIGN §6, issue 7).
 *
 * The module keeps its own non-blocking libpq connection on the event
 * loop.  It LISTENs on `ammd_command` (the NOTIFY of sql/0001's trigger,
 * payload the command id), so a new command is claimed within one round
 * trip of its insert, and a one-second tick does the rest:
 *
 *   claim    ammd_command_claim() (sql/0003) with this instance's
 *            [commands] caps per minute: for always-on meters (tcpip,
 *            mbus, modbus) at once; for GPRS meters only when they
 *            connect (command_claim_meter()).  The caps are counted in the
 *            database (sql/0005: actions sent in the sliding minute plus
 *            claimed commands that have not acted yet), so they hold
 *            across restarts and instances; each state-changing request
 *            takes its action slot first (command_checkpoint()).
 *            Parameters are checked again (cmd_kinds.c) right after the
 *            claim, so a bad plain-SQL insert fails before anything is
 *            sent.
 *   expire   a queued command past its expires_at becomes `expired`, and
 *            a running one whose instance died with no attempts left
 *            becomes `failed`, each with a sentence saying why;
 *   renew    the leases of this instance's running commands, every third
 *            of [commands] lease_seconds;
 *   wake     GPRS meters with queued commands get [gprs] wakeup_command
 *            run once per command (argument: the serial), e.g. an SMS.
 *
 * Every outcome is written with its MQTT result message
 * (<prefix>/command/<id>/result, daemon/message.h) into the outbox in the
 * same statement; the audit row comes from the table's trigger with the
 * database role, and created_by names who queued it (login, or
 * "mqtt:<client id>").
 *
 * How the scheduler and the sessions use it (one command per meter at a
 * time, oldest first):
 *
 *   command_set_executor(q, fn, arg)
 *       the scheduler says it can run commands: fn(meter_id, serial, arg)
 *       is called (from the loop) for each meter that has claimed commands
 *       waiting; it starts or extends a session for that meter with
 *       priority SCHED_PRIO_COMMAND.  Without an executor nothing is
 *       claimed (commands wait, and expire).
 *   n = command_take(q, meter_id, jobs, max)
 *       the session, once associated, takes the jobs claimed for its
 *       meter; for each: cmdk_run_init(&run, &job->params, job->progress),
 *       drive it (cmd_kinds.h), on CMDK_CHECKPOINT call
 *       command_checkpoint() and continue only from its callback with
 *       ok == true; at the end command_finish() with the run's outcome.
 *   command_release(q, job, why)
 *       the session could not run the job (connection lost before it
 *       started, drain): back to queued, the attempt counted.
 *   command_claim_meter(q, meter_id)
 *       a GPRS meter has just connected and is identified: claim its
 *       commands now (the executor then hears about them as usual).
 *
 * Jobs are owned by the queue until command_finish()/command_release(),
 * which free them; the pointer must not be used afterwards.
 */
#ifndef AMM_COMMAND_H
#define AMM_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd_kinds.h"

struct command_queue;

struct command_job {
	int64_t id;
	int32_t meter_id;
	char serial[40];
	char transport[16];
	int kind;
	struct cmdk_params params;
	char *progress; /* earlier attempt's checkpoint; NULL: none */
	int attempts;   /* this one included */
	int max_attempts;
	int64_t created_ms;
	char request_id[128];
	bool no_slot;             /* its checkpoint got no action slot in time (rate cap) */
	struct command_job *next; /* queue-internal */
};

extern const struct ammd_module command_module;

/* The running queue (NULL before start and after stop). */
struct command_queue *command_get(void);

typedef void (*command_executor_fn)(int32_t meter_id, const char *serial, void *arg);
void command_set_executor(struct command_queue *q, command_executor_fn fn, void *arg);

/* Jobs claimed for the meter, oldest first, into jobs[0..max); returns how
 * many.  They leave the waiting list. */
size_t command_take(struct command_queue *q, int32_t meter_id, struct command_job **jobs,
                    size_t max);

/* The run is about to send its first state-changing request
 * (CMDK_CHECKPOINT): store its progress (NULL: keep the stored one) with
 * the command and take an action slot under the kind's fleet-wide cap
 * (waiting up to 20 s for one); done(arg, ok) once both are committed
 * (ok) or could not be (the run must then stop without acting:
 * command_release(), which queues a job that got no slot again without
 * counting the attempt). */
void command_checkpoint(struct command_queue *q, struct command_job *job, const char *progress,
                        void (*done)(void *arg, bool ok), void *arg);

/* The outcome: succeeded (ok) or failed with result JSON and error.
 * Frees the job. */
void command_finish(struct command_queue *q, struct command_job *job, bool ok,
                    const char *result_json, const char *error);

/* Give a job back unexecuted (queued again, or failed when its attempts
 * are used up).  Frees the job. */
void command_release(struct command_queue *q, struct command_job *job, const char *why);

/* Give a job back because its meter could not be reached (no connection,
 * no association): queued again without counting the attempt, not before
 * delay_s from now, with why as its error, so that a command for a meter
 * that stays unreachable ends `expired` with the reason rather than
 * `failed` after a few quick retries.  Frees the job. */
void command_postpone(struct command_queue *q, struct command_job *job, const char *why,
                      int delay_s);

/* Claimed jobs of this meter not yet taken by a session. */
bool command_pending(const struct command_queue *q, int32_t meter_id);

/* Claim now the commands of one meter (a GPRS meter that connected). */
void command_claim_meter(struct command_queue *q, int32_t meter_id);

/* Claimed jobs not yet taken by a session. */
size_t command_waiting(const struct command_queue *q);

#endif
