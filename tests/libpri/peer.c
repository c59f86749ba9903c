/*
 * A libpri D-channel peer for tdmgw's tests (tests/isdn_libpri.rs).
 *
 * Test-only: libpri is GPL and is never linked into tdmgw's library or
 * binary. The test builds this file with `cc ... -lpri` at run time.
 *
 * usage: peer net|user [T200_ms T203_ms]
 *   T309 is set to EN 300 403's 90 s (active calls survive a link failure).
 *   fd 3    the D-channel: a SOCK_SEQPACKET socket, one LAPD frame per
 *           message, no FCS (libpri's read/write callbacks add and strip
 *           the 2 FCS octets it expects from a DAHDI HDLC/FCS channel)
 *   stdin   commands, one per line:
 *             call <id> <called> <channel>   SETUP (channel 0: any)
 *             proceed <id> | alert <id> | connect <id>
 *             hangup <id> <cause>
 *             reset <channel>                RESTART of one channel
 *             calls                          print "calls <n>"
 *   stdout  events, one per line: up, down, ring <id> <channel> <called>,
 *           proceeding <id>, ringing <id>, answer <id>, connect_ack <id>,
 *           hangup_req <id> <cause>, hangup <id> <cause>, hangup_ack <id>,
 *           null <id> (the call record is gone), restart <channel>,
 *           restart_ack <channel>, error <text>, event <name>
 *   stderr  libpri's own debug output
 *
 * Exits on EOF on stdin, on `quit`, or after 120 s whatever happens.
 */
#include <errno.h>
#include <libpri.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define DFD 3
/* libpri packs span and flags above the channel number (as chan_dahdi reads it). */
#define PRI_CHANNEL(p) ((p) & 0xff)
#define MAX_CALLS 64

struct call {
	int id;
	q931_call *c;
	int channel;
};

static struct call calls[MAX_CALLS];
static int next_incoming = 1000;
static struct pri *pri;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int io_read(struct pri *p, void *buf, int buflen)
{
	(void)p;
	int n = recv(DFD, buf, buflen - 2, 0);
	if (n <= 0)
		return n;
	/* libpri strips 2 FCS octets from what it reads. */
	memset((char *)buf + n, 0, 2);
	return n + 2;
}

static int io_write(struct pri *p, void *buf, int buflen)
{
	(void)p;
	/* libpri writes 2 spare octets for the FCS. */
	int n = send(DFD, buf, buflen - 2, 0);
	if (n < 0)
		return n;
	return n + 2;
}

static void on_message(struct pri *p, char *s)
{
	(void)p;
	fputs(s, stderr);
}

static void on_error(struct pri *p, char *s)
{
	(void)p;
	fprintf(stderr, "ERROR: %s", s);
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = 0;
	out("error %s", s);
}

static struct call *find_call(q931_call *c)
{
	for (int i = 0; i < MAX_CALLS; i++)
		if (calls[i].c == c && c)
			return &calls[i];
	return NULL;
}

static struct call *find_id(int id)
{
	for (int i = 0; i < MAX_CALLS; i++)
		if (calls[i].c && calls[i].id == id)
			return &calls[i];
	return NULL;
}

static struct call *add_call(int id, q931_call *c, int channel)
{
	for (int i = 0; i < MAX_CALLS; i++)
		if (!calls[i].c) {
			calls[i].id = id;
			calls[i].c = c;
			calls[i].channel = channel;
			return &calls[i];
		}
	return NULL;
}

static int live_calls(void)
{
	int n = 0;
	for (int i = 0; i < MAX_CALLS; i++)
		if (calls[i].c)
			n++;
	return n;
}

static void gone(struct call *k)
{
	out("null %d", k->id);
	k->c = NULL;
}

static int id_of(q931_call *c)
{
	struct call *k = find_call(c);
	return k ? k->id : -1;
}

static void handle(pri_event *e)
{
	struct call *k;
	if (!e)
		return;
	switch (e->e) {
	case PRI_EVENT_DCHAN_UP:
		out("up");
		break;
	case PRI_EVENT_DCHAN_DOWN:
		out("down");
		break;
	case PRI_EVENT_RING:
		k = add_call(next_incoming++, e->ring.call, PRI_CHANNEL(e->ring.channel));
		if (!k) {
			pri_hangup(pri, e->ring.call, PRI_CAUSE_SWITCH_CONGESTION);
			out("error call table full");
			break;
		}
		out("ring %d %d %s", k->id, k->channel, e->ring.callednum);
		break;
	case PRI_EVENT_PROCEEDING:
		k = find_call(e->proceeding.call);
		if (k && PRI_CHANNEL(e->proceeding.channel) > 0)
			k->channel = PRI_CHANNEL(e->proceeding.channel);
		out("proceeding %d", id_of(e->proceeding.call));
		break;
	case PRI_EVENT_RINGING:
		out("ringing %d", id_of(e->ringing.call));
		break;
	case PRI_EVENT_ANSWER:
		/* Manual CONNECT ACKNOWLEDGE mode (so that a received one is
		 * reported): acknowledge the CONNECT as chan_dahdi does. */
		pri_connect_ack(pri, e->answer.call, 0);
		out("answer %d", id_of(e->answer.call));
		break;
	case PRI_EVENT_CONNECT_ACK:
		out("connect_ack %d", id_of(e->connect_ack.call));
		break;
	case PRI_EVENT_HANGUP_REQ:
		/* The peer sent DISCONNECT: clear our side (RELEASE). */
		out("hangup_req %d %d", id_of(e->hangup.call), e->hangup.cause);
		pri_hangup(pri, e->hangup.call, e->hangup.cause);
		break;
	case PRI_EVENT_HANGUP:
		/* The call is cleared; the upper layer's pri_hangup frees it. */
		out("hangup %d %d", id_of(e->hangup.call), e->hangup.cause);
		k = find_call(e->hangup.call);
		pri_hangup(pri, e->hangup.call, e->hangup.cause);
		if (k)
			gone(k);
		break;
	case PRI_EVENT_HANGUP_ACK:
		out("hangup_ack %d", id_of(e->hangup.call));
		k = find_call(e->hangup.call);
		if (k)
			gone(k);
		break;
	case PRI_EVENT_RESTART:
		out("restart %d", e->restart.channel < 0 ? -1 : PRI_CHANNEL(e->restart.channel));
		break;
	case PRI_EVENT_RESTART_ACK:
		out("restart_ack %d", e->restartack.channel < 0 ? -1 : PRI_CHANNEL(e->restartack.channel));
		break;
	case PRI_EVENT_CONFIG_ERR:
		out("error config %s", e->err.err);
		break;
	default:
		out("event %s", pri_event2str(e->e));
		break;
	}
}

static void place_call(int id, const char *called, int channel)
{
	q931_call *c = pri_new_call(pri);
	struct pri_sr *sr = pri_sr_new();
	if (!c || !sr) {
		out("error cannot create call");
		return;
	}
	pri_sr_set_channel(sr, channel, channel != 0, 0);
	pri_sr_set_bearer(sr, PRI_TRANS_CAP_SPEECH, PRI_LAYER_1_ALAW);
	pri_sr_set_called(sr, (char *)called, PRI_UNKNOWN, 1);
	pri_sr_set_caller(sr, "2079460000", NULL, PRI_NATIONAL_ISDN,
		PRES_ALLOWED_USER_NUMBER_NOT_SCREENED);
	if (pri_setup(pri, c, sr)) {
		out("error setup refused");
	} else if (!add_call(id, c, channel)) {
		out("error call table full");
	}
	pri_sr_free(sr);
}

static void command(char *line)
{
	char word[32], called[64];
	int a = 0, b = 0;
	struct call *k;
	if (sscanf(line, "%31s", word) != 1)
		return;
	if (!strcmp(word, "call") && sscanf(line, "%*s %d %63s %d", &a, called, &b) == 3) {
		place_call(a, called, b);
	} else if (!strcmp(word, "proceed") && sscanf(line, "%*s %d", &a) == 1 && (k = find_id(a))) {
		pri_proceeding(pri, k->c, k->channel, 0);
	} else if (!strcmp(word, "alert") && sscanf(line, "%*s %d", &a) == 1 && (k = find_id(a))) {
		pri_acknowledge(pri, k->c, k->channel, 0);
	} else if (!strcmp(word, "connect") && sscanf(line, "%*s %d", &a) == 1 && (k = find_id(a))) {
		pri_answer(pri, k->c, k->channel, 0);
	} else if (!strcmp(word, "hangup") && sscanf(line, "%*s %d %d", &a, &b) == 2 && (k = find_id(a))) {
		pri_hangup(pri, k->c, b);
	} else if (!strcmp(word, "reset") && sscanf(line, "%*s %d", &a) == 1) {
		if (pri_reset(pri, a))
			out("error reset refused");
	} else if (!strcmp(word, "calls")) {
		out("calls %d", live_calls());
	} else if (!strcmp(word, "quit")) {
		exit(0);
	} else {
		out("error bad command: %s", line);
	}
}

int main(int argc, char **argv)
{
	char inbuf[4096];
	size_t inlen = 0;
	int node;
	if ((argc != 2 && argc != 4) || (strcmp(argv[1], "net") && strcmp(argv[1], "user"))) {
		fprintf(stderr, "usage: peer net|user [T200_ms T203_ms]\n");
		return 2;
	}
	node = strcmp(argv[1], "net") ? PRI_CPE : PRI_NETWORK;
	alarm(120);
	pri_set_message(on_message);
	pri_set_error(on_error);
	pri = pri_new_cb(DFD, node, PRI_SWITCH_EUROISDN_E1, io_read, io_write, NULL);
	if (!pri) {
		out("error pri_new_cb failed");
		return 1;
	}
	pri_set_debug(pri, PRI_DEBUG_Q921_STATE | PRI_DEBUG_Q931_DUMP | PRI_DEBUG_Q931_STATE
		| PRI_DEBUG_Q931_ANOMALY);
	/* Report received CONNECT ACKNOWLEDGEs (PRI_EVENT_CONNECT_ACK). */
	pri_connect_ack_enable(pri, 1);
	pri_set_timer(pri, PRI_TIMER_T309, 90000);
	if (argc == 4) {
		pri_set_timer(pri, PRI_TIMER_T200, atoi(argv[2]));
		pri_set_timer(pri, PRI_TIMER_T203, atoi(argv[3]));
	}
	for (;;) {
		fd_set rfds;
		struct timeval tv = { 0, 100000 }, now;
		struct timeval *next = pri_schedule_next(pri);
		if (next) {
			gettimeofday(&now, NULL);
			long us = (next->tv_sec - now.tv_sec) * 1000000L + (next->tv_usec - now.tv_usec);
			if (us < 0)
				us = 0;
			if (us < 100000) {
				tv.tv_sec = 0;
				tv.tv_usec = us;
			}
		}
		FD_ZERO(&rfds);
		FD_SET(0, &rfds);
		FD_SET(DFD, &rfds);
		int r = select(DFD + 1, &rfds, NULL, NULL, &tv);
		if (r < 0 && errno != EINTR) {
			perror("select");
			return 1;
		}
		if (r > 0 && FD_ISSET(DFD, &rfds))
			handle(pri_check_event(pri));
		if (r > 0 && FD_ISSET(0, &rfds)) {
			ssize_t n = read(0, inbuf + inlen, sizeof(inbuf) - 1 - inlen);
			if (n <= 0)
				return 0;
			inlen += (size_t)n;
			inbuf[inlen] = 0;
			char *nl;
			while ((nl = memchr(inbuf, '\n', inlen))) {
				*nl = 0;
				command(inbuf);
				size_t used = (size_t)(nl - inbuf) + 1;
				memmove(inbuf, nl + 1, inlen - used);
				inlen -= used;
				inbuf[inlen] = 0;
			}
			if (inlen == sizeof(inbuf) - 1)
				inlen = 0;
		}
		handle(pri_schedule_run(pri));
	}
}
