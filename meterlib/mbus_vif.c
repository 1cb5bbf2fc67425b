/*
 * mbus_vif.c: what a VIF and its VIFEs mean (EN 13757-3 tables 10-14):
 * quantity, SI unit and the factor that turns the raw number into that
 * unit.  Primary VIFs carry a power of ten in their low bits; durations
 * are scaled to seconds so that consumers see one unit per quantity.
 * Tables are ranges over the code with the low-bit count that holds the
 * exponent, so a lookup is a short scan and no allocation.
 */
#include <math.h>

#include "mbus.h"

struct vif_range {
	uint8_t lo, hi;		/* code range, after masking the extension bit */
	const char *quantity;
	const char *unit;
	int8_t exp_bias;	/* scale = 10^((code - lo) + exp_bias) ... */
	uint8_t kind;		/* ... for K_EXP; see below for the others */
};

enum {
	K_EXP,		/* 10^(n + bias) */
	K_ONE,		/* factor 1 */
	K_DURATION,	/* n: 0 s, 1 min, 2 h, 3 days */
	K_DURATION_FD,	/* FD 0x2C..: same */
	K_DATE,		/* type G */
	K_DATETIME,	/* type F / I / J, chosen by the data length */
};

static const struct vif_range primary[] = {
	{0x00, 0x07, "energy", "Wh", -3, K_EXP},
	{0x08, 0x0F, "energy", "J", 0, K_EXP},
	{0x10, 0x17, "volume", "m^3", -6, K_EXP},
	{0x18, 0x1F, "mass", "kg", -3, K_EXP},
	{0x20, 0x23, "on time", "s", 0, K_DURATION},
	{0x24, 0x27, "operating time", "s", 0, K_DURATION},
	{0x28, 0x2F, "power", "W", -3, K_EXP},
	{0x30, 0x37, "power", "J/h", 0, K_EXP},
	{0x38, 0x3F, "volume flow", "m^3/h", -6, K_EXP},
	{0x40, 0x47, "volume flow", "m^3/min", -7, K_EXP},
	{0x48, 0x4F, "volume flow", "m^3/s", -9, K_EXP},
	{0x50, 0x57, "mass flow", "kg/h", -3, K_EXP},
	{0x58, 0x5B, "flow temperature", "°C", -3, K_EXP},
	{0x5C, 0x5F, "return temperature", "°C", -3, K_EXP},
	{0x60, 0x63, "temperature difference", "K", -3, K_EXP},
	{0x64, 0x67, "external temperature", "°C", -3, K_EXP},
	{0x68, 0x6B, "pressure", "bar", -3, K_EXP},
	{0x6C, 0x6C, "date", "", 0, K_DATE},
	{0x6D, 0x6D, "date and time", "", 0, K_DATETIME},
	{0x6E, 0x6E, "units for H.C.A.", "HCA", 0, K_ONE},
	{0x70, 0x73, "averaging duration", "s", 0, K_DURATION},
	{0x74, 0x77, "actuality duration", "s", 0, K_DURATION},
	{0x78, 0x78, "fabrication number", "", 0, K_ONE},
	{0x79, 0x79, "enhanced identification", "", 0, K_ONE},
	{0x7A, 0x7A, "bus address", "", 0, K_ONE},
	{0x7E, 0x7E, "any VIF", "", 0, K_ONE},
};

/* First extension table, VIF 0xFB. */
static const struct vif_range table_fb[] = {
	{0x00, 0x01, "energy", "Wh", 5, K_EXP},
	{0x08, 0x09, "energy", "J", 8, K_EXP},
	{0x10, 0x11, "volume", "m^3", 2, K_EXP},
	{0x18, 0x19, "mass", "kg", 5, K_EXP},
	{0x1A, 0x1B, "relative humidity", "%", -1, K_EXP},
	{0x21, 0x21, "volume", "ft^3", -1, K_EXP},
	{0x22, 0x22, "volume", "US gal", -1, K_EXP},
	{0x23, 0x23, "volume", "US gal", 0, K_EXP},
	{0x24, 0x24, "volume flow", "US gal/min", -3, K_EXP},
	{0x25, 0x25, "volume flow", "US gal/min", 0, K_EXP},
	{0x26, 0x26, "volume flow", "US gal/h", 0, K_EXP},
	{0x28, 0x29, "power", "W", 5, K_EXP},
	{0x30, 0x31, "power", "J/h", 8, K_EXP},
	{0x58, 0x5B, "flow temperature", "°F", -3, K_EXP},
	{0x5C, 0x5F, "return temperature", "°F", -3, K_EXP},
	{0x60, 0x63, "temperature difference", "°F", -3, K_EXP},
	{0x64, 0x67, "external temperature", "°F", -3, K_EXP},
	{0x70, 0x73, "cold/warm temperature limit", "°F", -3, K_EXP},
	{0x74, 0x77, "cold/warm temperature limit", "°C", -3, K_EXP},
	{0x78, 0x7F, "cumulative count max power", "W", -3, K_EXP},
};

/* Second extension table, VIF 0xFD. */
static const struct vif_range table_fd[] = {
	{0x00, 0x03, "credit", "currency", -3, K_EXP},
	{0x04, 0x07, "debit", "currency", -3, K_EXP},
	{0x08, 0x08, "access number", "", 0, K_ONE},
	{0x09, 0x09, "medium", "", 0, K_ONE},
	{0x0A, 0x0A, "manufacturer", "", 0, K_ONE},
	{0x0B, 0x0B, "parameter set identification", "", 0, K_ONE},
	{0x0C, 0x0C, "model version", "", 0, K_ONE},
	{0x0D, 0x0D, "hardware version", "", 0, K_ONE},
	{0x0E, 0x0E, "firmware version", "", 0, K_ONE},
	{0x0F, 0x0F, "software version", "", 0, K_ONE},
	{0x10, 0x10, "customer location", "", 0, K_ONE},
	{0x11, 0x11, "customer", "", 0, K_ONE},
	{0x12, 0x12, "access code user", "", 0, K_ONE},
	{0x13, 0x13, "access code operator", "", 0, K_ONE},
	{0x14, 0x14, "access code system operator", "", 0, K_ONE},
	{0x15, 0x15, "access code developer", "", 0, K_ONE},
	{0x16, 0x16, "password", "", 0, K_ONE},
	{0x17, 0x17, "error flags", "", 0, K_ONE},
	{0x18, 0x18, "error mask", "", 0, K_ONE},
	{0x1A, 0x1A, "digital output", "", 0, K_ONE},
	{0x1B, 0x1B, "digital input", "", 0, K_ONE},
	{0x1C, 0x1C, "baud rate", "Bd", 0, K_ONE},
	{0x1D, 0x1D, "response delay time", "bit times", 0, K_ONE},
	{0x1E, 0x1E, "retry", "", 0, K_ONE},
	{0x20, 0x20, "first storage number", "", 0, K_ONE},
	{0x21, 0x21, "last storage number", "", 0, K_ONE},
	{0x22, 0x22, "storage block size", "", 0, K_ONE},
	{0x24, 0x27, "storage interval", "s", 0, K_DURATION},
	{0x28, 0x28, "storage interval", "month", 0, K_ONE},
	{0x29, 0x29, "storage interval", "year", 0, K_ONE},
	{0x2C, 0x2F, "duration since last readout", "s", 0, K_DURATION_FD},
	{0x30, 0x30, "start of tariff", "", 0, K_DATETIME},
	{0x31, 0x33, "duration of tariff", "s", 0, K_DURATION},
	{0x34, 0x37, "period of tariff", "s", 0, K_DURATION},
	{0x38, 0x38, "period of tariff", "month", 0, K_ONE},
	{0x39, 0x39, "period of tariff", "year", 0, K_ONE},
	{0x3A, 0x3A, "dimensionless", "", 0, K_ONE},
	{0x40, 0x4F, "voltage", "V", -9, K_EXP},
	{0x50, 0x5F, "current", "A", -12, K_EXP},
	{0x60, 0x60, "reset counter", "", 0, K_ONE},
	{0x61, 0x61, "cumulation counter", "", 0, K_ONE},
	{0x62, 0x62, "control signal", "", 0, K_ONE},
	{0x63, 0x63, "day of week", "", 0, K_ONE},
	{0x64, 0x64, "week number", "", 0, K_ONE},
	{0x65, 0x65, "time point of day change", "", 0, K_ONE},
	{0x66, 0x66, "state of parameter activation", "", 0, K_ONE},
	{0x67, 0x67, "special supplier information", "", 0, K_ONE},
	{0x68, 0x6B, "duration since last cumulation", "s", 0, K_DURATION_FD},
	{0x6C, 0x6F, "battery operating time", "s", 0, K_DURATION_FD},
	{0x70, 0x70, "battery change date and time", "", 0, K_DATETIME},
};

static double
pow10i(int e)
{
	/* Exact for the small exponents the tables use; avoids libm's pow. */
	static const double pos[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11};
	static const double neg[] = {1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9,
				     1e-10, 1e-11, 1e-12};
	if (e >= 0 && e < (int)(sizeof(pos) / sizeof(pos[0])))
		return pos[e];
	if (e < 0 && -e < (int)(sizeof(neg) / sizeof(neg[0])))
		return neg[-e];
	return pow(10.0, e);
}

static const double duration[] = {1, 60, 3600, 86400};

static bool
lookup(const struct vif_range *t, size_t n, uint8_t code, struct mbus_vif_info *info)
{
	for (size_t i = 0; i < n; i++) {
		if (code < t[i].lo || code > t[i].hi)
			continue;
		unsigned k = code - t[i].lo;
		info->quantity = t[i].quantity;
		info->unit = t[i].unit;
		info->kind = MBUS_V_NUMBER;
		switch (t[i].kind) {
		case K_EXP:
			info->scale = pow10i((int)k + t[i].exp_bias);
			break;
		case K_ONE:
			info->scale = 1;
			break;
		case K_DURATION:
		case K_DURATION_FD:
			info->scale = duration[k & 3];
			break;
		case K_DATE:
			info->kind = MBUS_V_DATE;
			break;
		case K_DATETIME:
			info->kind = MBUS_V_DATETIME;
			break;
		}
		return true;
	}
	return false;
}

/* Combinable (orthogonal) VIFEs that change the number, not the quantity. */
static void
combinable(uint8_t e, struct mbus_vif_info *info)
{
	e &= 0x7F;
	if (e >= 0x70 && e <= 0x77)	/* multiplicative correction 10^(nnn-6) */
		info->scale *= pow10i((e & 7) - 6);
	else if (e == 0x7D)		/* multiplicative correction 10^3 */
		info->scale *= 1e3;
}

void
mbus_vif_lookup(uint8_t vif, const uint8_t *vife, size_t nvife, struct mbus_vif_info *info)
{
	uint8_t code = vif & 0x7F;
	size_t i = 0;

	info->quantity = "reserved";
	info->unit = "";
	info->scale = 1;
	info->kind = MBUS_V_NUMBER;
	info->plain_text = false;
	info->manufacturer = false;

	if (code == 0x7F) {
		info->quantity = "manufacturer specific";
		info->manufacturer = true;
		return;		/* its VIFEs are private too */
	}
	if (code == 0x7C) {
		info->quantity = "plain text unit";
		info->plain_text = true;
	} else if (code == 0x7B || code == 0x7D) {
		/* The table code is the first VIFE. */
		if (nvife == 0)
			return;
		if (code == 0x7B)
			lookup(table_fb, sizeof(table_fb) / sizeof(table_fb[0]), vife[0] & 0x7F, info);
		else
			lookup(table_fd, sizeof(table_fd) / sizeof(table_fd[0]), vife[0] & 0x7F, info);
		i = 1;
	} else {
		lookup(primary, sizeof(primary) / sizeof(primary[0]), code, info);
	}
	for (; i < nvife; i++) {
		if (vife[i] == 0xFF || vife[i] == 0x7F)
			break;	/* the rest are manufacturer-specific VIFEs */
		combinable(vife[i], info);
	}
}
