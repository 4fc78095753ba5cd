/*
 * Objref numbering. Objects are identified by (type, k1, k2); the first lookup of a key
 * takes the next free objref (starting at 1) and reports first sight, so the caller
 * writes the object's records exactly once. Pid objects are entered first, which gives
 * them objrefs 1..nr_pids as the PIDS record requires.
 */
#include <stdlib.h>

#include "engine.h"

#define NBUCKETS 4096

struct obj {
	struct obj *next;
	int type;
	uint64_t k1, k2;
	int objref;
};

struct objhash {
	struct obj *bucket[NBUCKETS];
	int next_objref;
};

struct objhash *objhash_new(void)
{
	struct objhash *h = calloc(1, sizeof(*h));

	if (!h) {
		pr_perror("objhash");
		return NULL;
	}
	h->next_objref = 1;
	return h;
}

void objhash_free(struct objhash *h)
{
	int i;

	if (!h)
		return;
	for (i = 0; i < NBUCKETS; i++) {
		struct obj *o = h->bucket[i], *next;

		for (; o; o = next) {
			next = o->next;
			free(o);
		}
	}
	free(h);
}

/* FNV-1a, also used to key objects by content */
uint64_t hash_bytes(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t x = 0xcbf29ce484222325ULL ^ seed;

	while (len--) {
		x ^= *p++;
		x *= 0x100000001b3ULL;
	}
	return x;
}

/* objref of the key, adding it if new; -1 on allocation failure */
int obj_lookup_add(struct objhash *h, int type, uint64_t k1, uint64_t k2, bool *first)
{
	uint64_t key[3] = { type, k1, k2 };
	struct obj **b = &h->bucket[hash_bytes(key, sizeof(key), 0) % NBUCKETS];
	struct obj *o;

	for (o = *b; o; o = o->next) {
		if (o->type == type && o->k1 == k1 && o->k2 == k2) {
			*first = false;
			return o->objref;
		}
	}
	o = malloc(sizeof(*o));
	if (!o)
		return pr_perror("objhash");
	*o = (struct obj){ .next = *b, .type = type, .k1 = k1, .k2 = k2,
			   .objref = h->next_objref++ };
	*b = o;
	*first = true;
	return o->objref;
}
