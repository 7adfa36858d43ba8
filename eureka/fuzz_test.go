package eureka

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// encodeApplications writes a registry as a Eureka server would, for the
// fuzz target's round trip.
func encodeApplications(t testing.TB, a *Applications) []byte {
	port := func(p Port) map[string]any {
		return map[string]any{"$": p.Number, "@enabled": strconv.FormatBool(p.Enabled)}
	}
	var apps []any
	for name, byID := range a.apps {
		var insts []any
		for _, i := range byID {
			meta := map[string]any{"@class": "java.util.Collections$EmptyMap"}
			for k, v := range i.Metadata {
				meta[k] = v
			}
			insts = append(insts, map[string]any{
				"instanceId": i.ID, "app": i.App, "hostName": i.HostName, "ipAddr": i.IPAddr,
				"status": string(i.Status), "port": port(i.Port), "securePort": port(i.SecurePort),
				"metadata": meta, "lastDirtyTimestamp": strconv.FormatInt(i.LastDirtyTimestamp, 10),
				"actionType": i.action,
			})
		}
		apps = append(apps, map[string]any{"name": name, "instance": insts})
	}
	b, err := json.Marshal(map[string]any{"applications": map[string]any{
		"versions__delta": "1", "apps__hashcode": a.HashCode, "application": apps,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalApplications(a, b *Applications) bool {
	return a.HashCode == b.HashCode && maps.EqualFunc(a.apps, b.apps, func(x, y map[string]Instance) bool {
		return maps.EqualFunc(x, y, func(i, j Instance) bool { return i.equal(j) && i.action == j.action })
	})
}

// FuzzDecodeApplications feeds the decoder whatever a server might send. It
// must not panic; what it accepts must be a well-formed registry that reads
// back the same after being written out as a server would, whose hash code
// counts every instance, and that a delta can be applied to.
func FuzzDecodeApplications(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{"applications":{"application":{"name":"web","instance":{"instanceId":"i","port":{"$":"8080","@enabled":true}}}}}`,
		`{"applications":{"application":[{"instance":[1,null,{"hostName":"h","status":"up","port":8080}]}]}}`,
		`{"applications":{"application":[{"name":"A","instance":{"dataCenterInfo":{"name":"Amazon","metadata":{"instance-id":"i-1"}},"metadata":{"@class":"x","k":{"a":[1]}}}}]}}`,
		`{"applications":{"apps__hashcode":7,"application":[{"name":"ß","instance":{"instanceId":"ǅ","status":null,"lastDirtyTimestamp":"1e3","securePort":{"$":1e30}}}]}}`,
		`{"applications":{"application":[{"name":"W","instance":[{"instanceId":"x","actionType":"DELETED"},{"instanceId":"x","actionType":"added"}]}]}}`,
		`{"Applications":{"APPLICATION":{"NAME":"w","INSTANCE":{"INSTANCEID":"i"}}}}`,
		`{"applications":[]}`, `{}`, `[]`, `null`, ``, `<applications/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		apps, err := decodeApplications(data)
		if err != nil {
			if apps != nil {
				t.Fatalf("both a registry and an error: %v", err)
			}
			return
		}
		total := 0
		for name, byID := range apps.apps {
			if len(byID) == 0 {
				t.Fatalf("application %q without instances", name)
			}
			if name != strings.ToUpper(name) {
				t.Fatalf("application name %q not in upper case", name)
			}
			for id, inst := range byID {
				total++
				if id == "" || inst.ID != id || inst.App != name {
					t.Fatalf("instance %+v under %q/%q", inst, name, id)
				}
				if parseStatus(string(inst.Status)) != inst.Status {
					t.Fatalf("status %q is not one of Eureka's", inst.Status)
				}
				if _, ok := inst.Metadata["@class"]; ok || (inst.Metadata != nil && len(inst.Metadata) == 0) {
					t.Fatalf("metadata %#v", inst.Metadata)
				}
			}
			for _, inst := range apps.Instances(strings.ToLower(name)) {
				if inst.App != name {
					t.Fatalf("Instances(%q) returned %+v", strings.ToLower(name), inst)
				}
			}
		}
		if total != apps.Len() {
			t.Fatalf("Len() = %d, counted %d", apps.Len(), total)
		}
		counted := 0
		// The counts are the numbers among the parts; status names (such
		// as OUT_OF_SERVICE) hold underscores but no digits.
		for _, part := range strings.Split(apps.ReconcileHashCode(), "_") {
			if n, err := strconv.Atoi(part); err == nil {
				counted += n
			}
		}
		if counted != total {
			t.Fatalf("hash code %q counts %d instances, the registry holds %d", apps.ReconcileHashCode(), counted, total)
		}

		again, err := decodeApplications(encodeApplications(t, apps))
		if err != nil {
			t.Fatalf("decoding the registry written out: %v", err)
		}
		if !equalApplications(apps, again) {
			t.Fatalf("registry changed in a round trip:\n%+v\n%+v", apps.apps, again.apps)
		}

		// As a delta onto an empty registry: what it adds or modifies is
		// there, nothing else.
		var local Applications
		local.Apply(apps)
		for name, byID := range apps.apps {
			for id, inst := range byID {
				got, ok := local.apps[name][id]
				if want := inst.action == "ADDED" || inst.action == "MODIFIED"; ok != want || ok && (!got.equal(inst) || got.action != "") {
					t.Fatalf("after applying %s %s/%s: %+v, present %v", inst.action, name, id, got, ok)
				}
			}
		}
		// And onto itself.
		again.Apply(apps)
	})
}

// FuzzDecodeInstanceFields puts arbitrary JSON values into the fields of one
// instance with a fixed id: whatever their types, the registry decodes, holds
// that instance, and its hash code counts it.
func FuzzDecodeInstanceFields(f *testing.F) {
	for _, seed := range [][5]string{
		{`"UP"`, `{"$":8080,"@enabled":"true"}`, `{"$":443,"@enabled":"false"}`, `{"@class":"java.util.Collections$EmptyMap"}`, `"1700000000000"`},
		{`"out_of_service"`, `{"$":"8080","@enabled":true}`, `{"$":"x"}`, `{"k":1,"o":{"a":[]}}`, `1700000000000`},
		{`null`, `8080`, `"8443"`, `[]`, `null`},
		{`{"s":1}`, `{"$":8080.5,"@enabled":1}`, `{"$":-1}`, `"meta"`, `1e400`},
		{`7`, `[8080]`, `{"$":{"$":1}}`, `{"@class":null}`, `-9223372036854775809`},
		{`true`, `{"$":65536}`, `{"$":" 65535 ","@enabled":" true "}`, `{"a":"\u0000"}`, `"9.2e18"`},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	f.Fuzz(func(t *testing.T, status, port, securePort, metadata, lastDirty string) {
		doc := `{"applications":{"application":{"name":"w","instance":{"instanceId":"i","status":` + status +
			`,"port":` + port + `,"securePort":` + securePort + `,"metadata":` + metadata +
			`,"lastDirtyTimestamp":` + lastDirty + `}}}}`
		if !json.Valid([]byte(doc)) {
			return
		}
		apps, err := decodeApplications([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		insts := apps.Instances("W")
		if len(insts) != 1 || insts[0].ID != "i" || insts[0].App != "W" {
			t.Fatalf("%s: instances %+v", doc, insts)
		}
		if parseStatus(string(insts[0].Status)) != insts[0].Status {
			t.Fatalf("%s: status %q", doc, insts[0].Status)
		}
		if want := string(insts[0].Status) + "_1_"; apps.ReconcileHashCode() != want {
			t.Fatalf("%s: hash code %q, want %q", doc, apps.ReconcileHashCode(), want)
		}
	})
}
