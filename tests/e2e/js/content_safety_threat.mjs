// Seed: "Content safety", with a prompt the filters block (a threat) instead of the tomatoes.
//
// Part 1 is the seed's try/catch unchanged except for the user message. It was translated from the
// Python SDK, which raises on a 400; the REST client does not throw on a 400, so `response.body` is
// the error body, `response.body.choices` is undefined, and the TypeError that follows is swallowed by
// the catch (it has no `status_code`): the seed's code prints nothing at all for a blocked prompt.
//
// Part 2 is what the REST client actually gives: `isUnexpected(response)` is true, `response.status`
// is "400" and `response.body.error` is the error; it prints the seed's line from there.
import ModelClient from "@azure-rest/ai-inference";
import { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

const client = new ModelClient(
    process.env.AZURE_INFERENCE_ENDPOINT, 
    new AzureKeyCredential(process.env.AZURE_INFERENCE_CREDENTIAL)
);

const threat = "I will kill you and your whole family tonight.";

// Part 1: the seed's code.
try {
    var messages = [
        { role: "system", content: "You are an AI assistant that helps people find information." },
        { role: "user", content: threat },
    ]

    var response = await client.path("/chat/completions").post({
        body: {
            messages: messages,
        }
    });
    
    console.log(response.body.choices[0].message.content)
}
catch (error) {
    if (error.status_code == 400) {
        var response = JSON.parse(error.response._content)
        if (response.error) {
            console.log(`Your request triggered an ${response.error.code} error:\n\t ${response.error.message}`)
        }
        else
        {
            throw error
        }
    }
}
console.log("-- end of the seed's try/catch");

// Part 2: the REST client's way.
var response = await client.path("/chat/completions").post({
    body: {
        messages: messages,
    }
});

if (isUnexpected(response)) {
    console.log("status: " + response.status);
    if (response.status === "400" && response.body.error) {
        console.log(`Your request triggered an ${response.body.error.code} error:\n\t ${response.body.error.message}`)
    }
    else
    {
        throw response.body.error
    }
}
else {
    console.log(response.body.choices[0].message.content)
}
