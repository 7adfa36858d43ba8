package eureka

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readDoc(t testing.TB, name string) *Applications {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := decodeApplications(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	return apps
}

func TestDecodeSpringCloudRegistry(t *testing.T) {
	apps := readDoc(t, "spring.json")
	if apps.HashCode != "DOWN_1_UP_2_" || apps.Len() != 3 {
		t.Fatalf("hash code %q, %d instances; want DOWN_1_UP_2_, 3", apps.HashCode, apps.Len())
	}
	web := apps.Instances("web") // names match without regard to case
	if len(web) != 2 {
		t.Fatalf("WEB: %+v", web)
	}
	a := web[0]
	want := Instance{
		ID: "host-a:web:8080", App: "WEB", HostName: "10.0.0.1", IPAddr: "10.0.0.1", Status: StatusUp,
		Port: Port{8080, true}, SecurePort: Port{443, false},
		Metadata:           map[string]string{"management.port": "8080", "zone": "a"},
		LastDirtyTimestamp: 1699999999000,
		action:             "ADDED",
	}
	if !a.equal(want) || a.action != want.action {
		t.Errorf("first WEB instance\n got %+v\nwant %+v", a, want)
	}
	if b := web[1]; b.Status != StatusDown || b.Metadata != nil {
		t.Errorf("second WEB instance: status %s, metadata %v; want DOWN and none (only @class)", b.Status, b.Metadata)
	}
	// An application and an instance sent as objects, ports as strings.
	api := apps.Instances("API")
	if len(api) != 1 || api[0].Port != (Port{9090, true}) || api[0].SecurePort != (Port{9443, true}) || api[0].HostName != "api.internal" {
		t.Errorf("API: %+v", api)
	}
	if got := apps.ReconcileHashCode(); got != apps.HashCode {
		t.Errorf("ReconcileHashCode() = %q, the server's is %q", got, apps.HashCode)
	}
}

func TestDecodeQuirks(t *testing.T) {
	wrap := func(instance string) string {
		return `{"applications":{"application":{"name":"web","instance":` + instance + `}}}`
	}
	tests := []struct {
		name string
		json string
		want Instance // compared with equal; App is always WEB
	}{
		{"status missing is UP (eureka-client's default)", wrap(`{"instanceId":"i","status":null}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
		{"status in lower case", wrap(`{"instanceId":"i","status":"out_of_service"}`),
			Instance{ID: "i", Status: StatusOutOfService, Port: Port{0, true}}},
		{"status unknown to Eureka", wrap(`{"instanceId":"i","status":"HEALTHY"}`),
			Instance{ID: "i", Status: StatusUnknown, Port: Port{0, true}}},
		{"status not a string", wrap(`{"instanceId":"i","status":{"x":1}}`),
			Instance{ID: "i", Status: StatusUnknown, Port: Port{0, true}}},
		{"id from hostName", wrap(`{"hostName":"h","ipAddr":"10.1.1.1"}`),
			Instance{ID: "h", HostName: "h", IPAddr: "10.1.1.1", Status: StatusUp, Port: Port{0, true}}},
		{"id from Amazon data center", wrap(`{"hostName":"h","dataCenterInfo":{"name":"Amazon","metadata":{"instance-id":"i-123"}}}`),
			Instance{ID: "i-123", HostName: "h", Status: StatusUp, Port: Port{0, true}}},
		{"port number as string, enabled as boolean", wrap(`{"instanceId":"i","port":{"$":" 8080 ","@enabled":true},"securePort":{"$":"8443","@enabled":"true"}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{8080, true}, SecurePort: Port{8443, true}}},
		{"port disabled", wrap(`{"instanceId":"i","port":{"$":8080,"@enabled":"false"}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{8080, false}}},
		{"port without @enabled", wrap(`{"instanceId":"i","port":{"$":8080},"securePort":{"$":8443}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{8080, true}, SecurePort: Port{8443, false}}},
		{"bare port", wrap(`{"instanceId":"i","port":8080,"securePort":"8443"}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{8080, true}, SecurePort: Port{8443, false}}},
		{"port 8080.0", wrap(`{"instanceId":"i","port":{"$":8080.0,"@enabled":"true"}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{8080, true}}},
		{"ports out of range or not integers", wrap(`{"instanceId":"i","port":{"$":70000},"securePort":{"$":"80.5","@enabled":"yes"}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}, SecurePort: Port{0, false}}},
		{"port of the wrong type", wrap(`{"instanceId":"i","port":[8080],"securePort":{"$":{"n":1}}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
		{"metadata values of other types", wrap(`{"instanceId":"i","metadata":{"@class":"java.util.HashMap","n":1.5,"b":true,"o":{"x":1},"z":null}}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}, Metadata: map[string]string{"n": "1.5", "b": "true", "o": "", "z": ""}}},
		{"metadata not an object", wrap(`{"instanceId":"i","metadata":"x"}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
		{"lastDirtyTimestamp as number", wrap(`{"instanceId":"i","lastDirtyTimestamp":1700000000123}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}, LastDirtyTimestamp: 1700000000123}},
		{"lastDirtyTimestamp as string", wrap(`{"instanceId":"i","lastDirtyTimestamp":"1700000000123"}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}, LastDirtyTimestamp: 1700000000123}},
		{"lastDirtyTimestamp garbage", wrap(`{"instanceId":"i","lastDirtyTimestamp":"soon"}`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
		{"instance list with odd elements", wrap(`[1,"x",null,[],{"instanceId":"i"}]`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
		{"two instances with one id: the later wins", wrap(`[{"instanceId":"i","status":"DOWN"},{"instanceId":"i","status":"UP"}]`),
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
		{"application without a name", `{"applications":{"application":[{"instance":{"instanceId":"i","app":"web"}}]}}`,
			Instance{ID: "i", Status: StatusUp, Port: Port{0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps, err := decodeApplications([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			got := apps.Instances("WEB")
			tt.want.App = "WEB"
			if len(got) != 1 || !got[0].equal(tt.want) {
				t.Errorf("\n got %+v\nwant [%+v]", got, tt.want)
			}
		})
	}
}

func TestDecodeSkipsAndFails(t *testing.T) {
	for _, doc := range []string{
		`{"applications":{}}`,
		`{"applications":{"application":null}}`,
		`{"applications":{"application":"WEB"}}`,
		`{"applications":{"application":[{"name":"WEB"}]}}`,
		`{"applications":{"application":[{"name":"WEB","instance":{"ipAddr":"10.0.0.1"}}]}}`, // no id
		`{"applications":{"application":[{"name":"WEB","instance":[]}]},"extra":[1,2]}`,
	} {
		apps, err := decodeApplications([]byte(doc))
		if err != nil || apps.Len() != 0 {
			t.Errorf("%s: %d instances, error %v; want none, no error", doc, apps.Len(), err)
		}
	}
	for _, doc := range []string{
		``, `null`, `[]`, `"x"`, `{}`, `{"applications":null}`, `{"applications":[]}`, `{"applications":{`,
		`<applications><versions__delta>1</versions__delta></applications>`,
	} {
		if apps, err := decodeApplications([]byte(doc)); err == nil {
			t.Errorf("%q: %+v, no error; want an error", doc, apps)
		}
	}
	if _, err := decodeApplications([]byte(`{}`)); err == nil || !strings.Contains(err.Error(), `no "applications" object`) {
		t.Errorf("error for {}: %v", err)
	}
}

func TestReconcileHashCode(t *testing.T) {
	var apps Applications
	if got := apps.ReconcileHashCode(); got != "" {
		t.Errorf("empty registry: %q, want \"\"", got)
	}
	add := func(app, id string, s Status) { apps.put(app, id, Instance{ID: id, App: app, Status: s}) }
	add("A", "1", StatusUp)
	add("A", "2", StatusUp)
	add("B", "3", StatusUp)
	add("B", "4", StatusDown)
	if got := apps.ReconcileHashCode(); got != "DOWN_1_UP_3_" {
		t.Errorf("got %q, want DOWN_1_UP_3_", got)
	}
	// Sorted as Java's TreeMap sorts strings: UNKNOWN before UP.
	add("C", "5", StatusUnknown)
	add("C", "6", StatusOutOfService)
	add("C", "7", StatusStarting)
	if got, want := apps.ReconcileHashCode(), "DOWN_1_OUT_OF_SERVICE_1_STARTING_1_UNKNOWN_1_UP_3_"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestApply(t *testing.T) {
	apps := readDoc(t, "spring.json")
	delta := readDoc(t, "delta.json")
	apps.Apply(delta)
	if got := apps.ReconcileHashCode(); got != delta.HashCode {
		t.Errorf("hash code after the delta: %q, the server's %q", got, delta.HashCode)
	}
	web := apps.Instances("WEB")
	if len(web) != 1 || web[0].ID != "host-a:web:8080" || web[0].Status != StatusOutOfService || web[0].LastDirtyTimestamp != 1700000005000 {
		t.Errorf("WEB after the delta: %+v", web)
	}
	if web[0].action != "" {
		t.Errorf("the registry keeps the delta's action %q", web[0].action)
	}
	api := apps.Instances("API")
	if len(api) != 1 || api[0].ID != "host-d:api:9090" || api[0].Metadata != nil {
		t.Errorf("API after the delta: %+v", api)
	}

	// Deleting the last instance removes the application; unknown actions
	// and deletions of unknown instances change nothing.
	odd, err := decodeApplications([]byte(`{"applications":{"apps__hashcode":"","application":[
		{"name":"WEB","instance":[{"instanceId":"host-a:web:8080","actionType":"DELETED"},{"instanceId":"new","actionType":"RENAMED"}]},
		{"name":"NONE","instance":{"instanceId":"x","actionType":"DELETED"}},
		{"name":"API","instance":{"instanceId":"host-d:api:9090","actionType":"deleted"}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	apps.Apply(odd)
	if apps.Len() != 0 || len(apps.apps) != 0 {
		t.Errorf("after deleting all: %+v", apps.apps)
	}
}

// testdata/polaris.json is what Polaris v1.18.1's Eureka API sent for one
// registered instance: "@enabled" as booleans, "@class" among the metadata,
// lastDirtyTimestamp null, and actionType in a full fetch.
func TestDecodePolarisRegistry(t *testing.T) {
	apps := readDoc(t, "polaris.json")
	got := apps.Instances("WEB")
	want := Instance{
		ID: "web-1", App: "WEB", HostName: "127.0.0.11", IPAddr: "127.0.0.11", Status: StatusUp,
		Port: Port{8081, true}, SecurePort: Port{443, false},
		Metadata: map[string]string{"campus": "", "protocol": "HTTP", "region": "", "zone": "a"},
	}
	if len(got) != 1 || !got[0].equal(want) {
		t.Errorf("\n got %+v\nwant [%+v]", got, want)
	}
	if apps.ReconcileHashCode() != apps.HashCode {
		t.Errorf("ReconcileHashCode() = %q, the server's is %q", apps.ReconcileHashCode(), apps.HashCode)
	}
}
