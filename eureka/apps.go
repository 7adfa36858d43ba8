// Package eureka is a client of the Eureka service registry's REST API, as
// Netflix eureka-server, Spring Cloud Netflix and Polaris's Eureka API serve
// it: it fetches the whole registry once (GET {server}/apps), then the
// changes (GET {server}/apps/delta) on an interval, and keeps a local copy
// that it reconciles with a full fetch whenever the copy's hash code differs
// from the server's, as Netflix eureka-client does (DiscoveryClient
// getAndUpdateDelta, updateDelta and reconcileAndLogDifference).
//
// It reads only what a gateway needs of an instance: its status, address,
// ports, metadata, id and lastDirtyTimestamp. It neither registers nor
// heartbeats.
package eureka

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Status is an instance's status. The decoder maps anything a server sends to
// one of the five below, as eureka-client's InstanceStatus.toEnum does, so
// that the hash code computed from a local copy matches the server's.
type Status string

// The statuses of Netflix's InstanceStatus.
const (
	StatusUp           Status = "UP"
	StatusDown         Status = "DOWN"
	StatusStarting     Status = "STARTING"
	StatusOutOfService Status = "OUT_OF_SERVICE"
	StatusUnknown      Status = "UNKNOWN"
)

// parseStatus is InstanceStatus.toEnum: the name, matched without regard to
// case, else UNKNOWN.
func parseStatus(s string) Status {
	switch u := Status(strings.ToUpper(s)); u {
	case StatusUp, StatusDown, StatusStarting, StatusOutOfService, StatusUnknown:
		return u
	}
	return StatusUnknown
}

// Port is one of an instance's ports.
type Port struct {
	// Number is the TCP port, or 0 if the server sent none or one that is
	// not an integer from 1 to 65535.
	Number uint16
	// Enabled is the port's "@enabled" flag. When the server leaves it out,
	// the plain port counts as enabled and the secure port as disabled, as
	// in eureka-client's InstanceInfo.
	Enabled bool
}

// Instance is one registered instance of an application, as the last fetch
// left it.
type Instance struct {
	// ID is the instance's id, as eureka-client's InstanceInfo.getId reads
	// it: instanceId, else the data center's instance-id on Amazon, else
	// hostName. It is never empty: instances without an id are dropped.
	ID string
	// App is the application's name in upper case.
	App string
	// HostName and IPAddr are the instance's host name and IP address as
	// the server sent them (not checked).
	HostName string
	IPAddr   string
	// Status is the instance's status; eureka-client treats a missing one
	// as UP.
	Status     Status
	Port       Port
	SecurePort Port
	// Metadata is the instance's metadata without the "@class" entry that
	// some servers add. Values that are not strings read as text: numbers
	// and booleans as written; null, objects and arrays as "". It is nil
	// when empty, and shared: callers must not change it.
	Metadata map[string]string
	// LastDirtyTimestamp is when the instance last changed on its side, in
	// milliseconds since the Unix epoch (0 if not sent).
	LastDirtyTimestamp int64

	action string // a delta's actionType: ADDED, MODIFIED or DELETED
}

func (i Instance) equal(j Instance) bool {
	return i.ID == j.ID && i.App == j.App && i.HostName == j.HostName && i.IPAddr == j.IPAddr &&
		i.Status == j.Status && i.Port == j.Port && i.SecurePort == j.SecurePort &&
		i.LastDirtyTimestamp == j.LastDirtyTimestamp && maps.Equal(i.Metadata, j.Metadata)
}

func equalInstances(a, b []Instance) bool {
	return slices.EqualFunc(a, b, Instance.equal)
}

// Applications is a registry: as a server sent it (the whole registry, or the
// changes of a delta), or as a client keeps it. The zero value is an empty
// registry.
type Applications struct {
	// HashCode is the apps__hashcode the server sent with it: its
	// reconcile hash code after the changes.
	HashCode string
	// apps maps application names in upper case to their instances by id.
	// Applications without instances are removed.
	apps map[string]map[string]Instance
}

// Instances returns the application's instances, sorted by id; nil if the
// registry holds none. The name is matched without regard to case, as
// Eureka's names are.
func (a *Applications) Instances(app string) []Instance {
	byID := a.apps[strings.ToUpper(app)]
	if len(byID) == 0 {
		return nil
	}
	out := slices.Collect(maps.Values(byID))
	slices.SortFunc(out, func(x, y Instance) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// Len is the number of instances in the registry.
func (a *Applications) Len() int {
	n := 0
	for _, byID := range a.apps {
		n += len(byID)
	}
	return n
}

// ReconcileHashCode is eureka-client's Applications.getReconcileHashCode:
// each status with its instance count, sorted by status, as
// "STATUS_count_", such as "DOWN_1_UP_3_"; "" for an empty registry.
func (a *Applications) ReconcileHashCode() string {
	counts := make(map[Status]int)
	for _, byID := range a.apps {
		for _, inst := range byID {
			counts[inst.Status]++
		}
	}
	var b strings.Builder
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		b.WriteString(string(s))
		b.WriteByte('_')
		b.WriteString(strconv.Itoa(counts[s]))
		b.WriteByte('_')
	}
	return b.String()
}

// Apply applies the changes of a delta to the registry, as eureka-client's
// updateDelta does: an ADDED or MODIFIED instance replaces the one with its
// id (or is added), a DELETED one is removed. Instances of a delta without
// one of these actions are ignored.
func (a *Applications) Apply(delta *Applications) {
	for app, byID := range delta.apps {
		for id, inst := range byID {
			switch inst.action {
			case "ADDED", "MODIFIED":
				inst.action = ""
				a.put(app, id, inst)
			case "DELETED":
				if cur := a.apps[app]; cur != nil {
					delete(cur, id)
					if len(cur) == 0 {
						delete(a.apps, app)
					}
				}
			}
		}
	}
}

func (a *Applications) put(app, id string, inst Instance) {
	if a.apps == nil {
		a.apps = make(map[string]map[string]Instance)
	}
	byID := a.apps[app]
	if byID == nil {
		byID = make(map[string]Instance)
		a.apps[app] = byID
	}
	byID[id] = inst
}

// maxBody bounds the answers read from a server.
const maxBody = 64 << 20

// errNoApplications is the decoder's answer to JSON without the
// "applications" object every Eureka answer has.
var errNoApplications = errors.New(`the JSON has no "applications" object, so it is not a Eureka registry`)

// decodeApplications reads a Eureka JSON answer, {"applications": {...}}.
// It fails only when data is not JSON or has no "applications" object:
// fields of unexpected types read as missing, application and instance
// lists may be a single object or an array, and ports and timestamps may be
// numbers or strings. An application listed twice is merged, and of two
// instances with one id in one application the later wins (eureka-client's
// Application.addInstance). It never panics.
func decodeApplications(data []byte) (*Applications, error) {
	var env struct {
		Applications *appsJSON `json:"applications"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, errNoApplications
		}
		return nil, err
	}
	if env.Applications == nil {
		return nil, errNoApplications
	}
	out := &Applications{HashCode: env.Applications.HashCode.text}
	for _, app := range env.Applications.Application {
		for _, ij := range app.Instance {
			inst, ok := ij.instance()
			if !ok {
				continue
			}
			name := app.Name.text
			if name == "" {
				name = ij.App.text
			}
			inst.App = strings.ToUpper(name)
			out.put(inst.App, inst.ID, inst)
		}
	}
	return out, nil
}

type appsJSON struct {
	HashCode    text          `json:"apps__hashcode"`
	Application many[appJSON] `json:"application"`
}

type appJSON struct {
	Name     text               `json:"name"`
	Instance many[instanceJSON] `json:"instance"`
}

type instanceJSON struct {
	InstanceID         text           `json:"instanceId"`
	HostName           text           `json:"hostName"`
	App                text           `json:"app"`
	IPAddr             text           `json:"ipAddr"`
	Status             *text          `json:"status"` // nil: missing or null, which eureka-client takes for UP
	Port               *portJSON      `json:"port"`
	SecurePort         *portJSON      `json:"securePort"`
	DataCenterInfo     dataCenterJSON `json:"dataCenterInfo"`
	Metadata           metadataJSON   `json:"metadata"`
	LastDirtyTimestamp text           `json:"lastDirtyTimestamp"`
	ActionType         text           `json:"actionType"`
}

func (ij *instanceJSON) instance() (Instance, bool) {
	id := ij.InstanceID.text
	if id == "" && ij.DataCenterInfo.Name.text == "Amazon" {
		id = ij.DataCenterInfo.Metadata.m["instance-id"]
	}
	if id == "" {
		id = ij.HostName.text
	}
	if id == "" {
		return Instance{}, false
	}
	inst := Instance{
		ID:                 id,
		HostName:           ij.HostName.text,
		IPAddr:             ij.IPAddr.text,
		Status:             StatusUp,
		Port:               Port{Enabled: true},
		Metadata:           ij.Metadata.m,
		LastDirtyTimestamp: ij.LastDirtyTimestamp.int64(),
		action:             strings.ToUpper(ij.ActionType.text),
	}
	if ij.Status != nil {
		inst.Status = parseStatus(ij.Status.text)
	}
	if ij.Port != nil {
		inst.Port = ij.Port.port(true)
	}
	if ij.SecurePort != nil {
		inst.SecurePort = ij.SecurePort.port(false)
	}
	return inst, true
}

// text is a JSON value read as Jackson's JsonNode.asText reads it: a string
// as is, a number or boolean as written, null, an object or an array as "".
// It never fails to decode.
type text struct {
	text   string
	number bool // it was a JSON number
}

func (t *text) UnmarshalJSON(b []byte) error {
	*t = text{}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	switch c := b[0]; {
	case c == '"':
		_ = json.Unmarshal(b, &t.text)
	case c == '-' || (c >= '0' && c <= '9'):
		t.text, t.number = string(b), true
	case c == 't' || c == 'f':
		t.text = string(b)
	}
	return nil
}

// int64 reads the value as an integer: a number, or a string holding one
// (surrounding spaces allowed); 0 for anything else or out of range.
func (t text) int64() int64 {
	s := strings.TrimSpace(t.text)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	// Integers written as 8080.0 or 1e3.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0
	}
	return int64(f)
}

// portJSON is {"$": 8080, "@enabled": "true"}; "$" may also be a string, and
// a bare number or string counts as the port itself.
type portJSON struct {
	number  text
	enabled *text
}

func (p *portJSON) UnmarshalJSON(b []byte) error {
	*p = portJSON{}
	var obj struct {
		Number  text  `json:"$"`
		Enabled *text `json:"@enabled"`
	}
	if err := json.Unmarshal(b, &obj); err == nil {
		p.number, p.enabled = obj.Number, obj.Enabled
		return nil
	}
	_ = p.number.UnmarshalJSON(b)
	return nil
}

func (p *portJSON) port(enabledByDefault bool) Port {
	out := Port{Enabled: enabledByDefault}
	if n := p.number.int64(); n > 0 && n <= math.MaxUint16 {
		out.Number = uint16(n)
	}
	if p.enabled != nil {
		out.Enabled = p.enabled.bool()
	}
	return out
}

// bool is Jackson's asBoolean: true for true, a string "true" (surrounding
// spaces allowed) or a non-zero number.
func (t text) bool() bool {
	s := strings.TrimSpace(t.text)
	if t.number {
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && f != 0
	}
	return s == "true"
}

type dataCenterJSON struct {
	Name     text         `json:"name"`
	Metadata metadataJSON `json:"metadata"`
}

func (d *dataCenterJSON) UnmarshalJSON(b []byte) error {
	*d = dataCenterJSON{}
	type plain dataCenterJSON
	var v plain
	if json.Unmarshal(b, &v) == nil {
		*d = dataCenterJSON(v)
	}
	return nil
}

// metadataJSON is an object of metadata, read as eureka-client reads it: the
// "@class" entry left out, values as text. Anything but an object reads as
// empty.
type metadataJSON struct {
	m map[string]string
}

func (m *metadataJSON) UnmarshalJSON(b []byte) error {
	*m = metadataJSON{}
	var raw map[string]text
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	delete(raw, "@class")
	if len(raw) == 0 {
		return nil
	}
	m.m = make(map[string]string, len(raw))
	for k, v := range raw {
		m.m[k] = v.text
	}
	return nil
}

// many is a list that servers send as an array, or as a single object when
// it has one element (XML-to-JSON converters do so). Elements that are not
// objects are skipped; anything but an array or an object reads as empty.
type many[T any] []T

func (l *many[T]) UnmarshalJSON(b []byte) error {
	*l = nil
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '[':
		var raws []json.RawMessage
		if json.Unmarshal(b, &raws) != nil {
			return nil
		}
		for _, r := range raws {
			if r = bytes.TrimSpace(r); len(r) == 0 || r[0] != '{' {
				continue
			}
			var v T
			if json.Unmarshal(r, &v) == nil {
				*l = append(*l, v)
			}
		}
	case '{':
		var v T
		if json.Unmarshal(b, &v) == nil {
			*l = many[T]{v}
		}
	}
	return nil
}
